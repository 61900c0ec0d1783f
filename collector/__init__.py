"""The central collector: ingest, storage, state, correlation, incidents, API and dashboard.

Built from the pipeline issue on; configuration is read by
`sitewatch.config.load_collector_config`.
"""
