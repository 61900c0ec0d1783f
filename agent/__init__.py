"""The branch-office agent: plan cache, scheduler, durable outbox, shipper and heartbeat.

Built in the pipeline issue; configuration is read by `sitewatch.config.load_agent_config`.
"""
