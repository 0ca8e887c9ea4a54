"""How the gateway runs: one process or N workers, the supervisor, the launcher `dualserve up`
uses.
"""
