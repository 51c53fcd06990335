from dagster import DailyPartitionsDefinition

# One partition per UTC day of inbox traffic; every layer shares it so a backfill of a
# range of days reprocesses the whole chain for those days.
daily_partitions = DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")
