"""Prefect flows and their task wrappers: the order of stages and their fan-out. The only package that imports
Prefect."""
