"""What a command process needs around its flows: the settings it runs with, a Prefect API, a quiet console."""
