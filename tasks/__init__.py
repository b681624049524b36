"""One module per stage: plain functions that do the work, and thin Prefect tasks over them."""
