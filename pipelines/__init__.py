"""MIROCALS biomarker warehouse: deliveries -> Dagster assets -> Great Expectations -> DuckDB."""
