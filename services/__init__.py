"""The domain rules: transactions and state machines over the models, under the policies.

No engine and no HTTP here: the gateway and the tasks call these.
"""
