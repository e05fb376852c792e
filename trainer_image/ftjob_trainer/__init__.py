"""The program that runs inside ftjob's training pods (and under `ftjob run`).

It must not import kopf or the operator: the contract between them is the config JSON.
"""
