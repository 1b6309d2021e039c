"""The catalog: services, their instances, each instance's role and health history."""
