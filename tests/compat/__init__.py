"""
Checks against txrwlock 1.1.4 itself: its own test module, unchanged (make compat).
"""
