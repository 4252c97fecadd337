"""What tests, benchmarks and scripts share: the real server on loopback, stand-in services, a learner, speech."""
