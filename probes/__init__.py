"""Probes: one module per kind (icmp, tcp, http, snmp, sip, host), each an async function.

Built in the probes issue, together with the result record both agent and collector speak.
"""
