"""What a process needs around its flows: the settings a command runs with, a Prefect API, a quiet console;
and in every flow-run process, the log lines its runs show."""
