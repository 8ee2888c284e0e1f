"""Test-wide plugins: database tiers, real servers, the hotline harness."""

pytest_plugins = [
    "tests.kit.databases",
    "tests.kit.servers",
    "tests.kit.harness",
    "tests.kit.phones",
    "tests.kit.calls",
    "tests.kit.crowd",
]
