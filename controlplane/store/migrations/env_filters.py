"""What autogenerate compares: models, not the objects the store manages itself."""

import re

# Managed by the partition loop, not by models: daily partitions of the partitioned tables.
PARTITION = re.compile(r"^infrastructure_(metrics|events)_p\d{8}$")
# Indexes only PostgreSQL has (GIN, BRIN, full text), created by migrations with raw DDL.
PG_ONLY_INDEX = "ix_pg_"


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "table" and PARTITION.match(name or ""):
        return False
    return not (type_ == "index" and reflected and (name or "").startswith(PG_ONLY_INDEX))
