"""The broker conformance suite: every behaviour of the contract, run against every broker."""
