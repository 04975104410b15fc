"""Infrastructure building blocks: adapters for databases, brokers, HTTP and caches."""
