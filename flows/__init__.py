"""Prefect flows: the order of stages and their fan-out. No data logic lives here."""
