"""Messaging on RabbitMQ for applications: a topology declared from settings (applied as a
diff first), publishing with confirms, a consumer helper with retries through TTL queues
and a final dead-letter queue, schemas per exchange and routing key, the dead letters
archived to the store with replay and discard, queue management, analytics and backups of
the broker's definitions. The client is kombu; management goes through RabbitMQ's
management HTTP API. docs/messaging.md says how to use it.

- ``definition``: the topology definition, checked and expanded (pure)
"""
