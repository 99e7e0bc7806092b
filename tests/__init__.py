"""
The txrwlock test suite, run by trial (make test).
"""
