"""Transactions across layers: a journal in the store, prepare, apply, verify, rollback,
commit-confirm and recovery after a crash. See docs/transactions.md."""
