"""How flows are served and scheduled."""
