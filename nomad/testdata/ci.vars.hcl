# Values for the tests of the job specifications. Nothing here is a real
# address or credential: the hosts are under .invalid (RFC 2606).
version               = "0.0.0-ci"
users_database_url    = "postgres://portico:not-a-secret@postgres.invalid:5432/users?sslmode=require"
products_database_url = "postgres://portico:not-a-secret@postgres.invalid:5432/products?sslmode=require"
amqp_url              = "amqp://portico:not-a-secret@rabbitmq.invalid:5672/"
edge_redis_url        = "redis://redis.invalid:6379/0"
ratelimit_redis_addr  = "redis.invalid:6379"
