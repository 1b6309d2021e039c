"""A separate process using the cache, driven by the cache tests over stdin/stdout
(one JSON command per line, one JSON answer per line)."""

import json
import os
import sys
import threading
import time

import redis

from controlplane.cache import Cache, MemcachedLayer, MemoryLayer, RedisLayer


def main() -> None:
    config = json.loads(sys.argv[1])
    client = redis.Redis.from_url(config["redis_url"])
    layers = [(MemoryLayer(), 300)]
    if config.get("memcached"):
        layers.append((MemcachedLayer(config["memcached"]), 300))
    layers.append((RedisLayer(client), 300))
    cache = Cache(layers, namespace=config["namespace"], redis=client)
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "fill":  # read through: every key is now in this process's memory
            for key, tags in command["keys"].items():
                cache.get_or_set(key, lambda k=key: f"{k}@{os.getpid()}", tags=tags)
            answer = {"filled": len(command["keys"])}
        elif command["op"] == "peek":  # what this process's memory layer would serve
            answer = {key: cache.get(key) for key in command["keys"]}
            answer = {"memory": cache.memory.size()[0], "values": answer}
        elif command["op"] == "stampede":
            answer = stampede(cache, client, command)
        else:
            break
        print(json.dumps(answer), flush=True)
    cache.close()


def stampede(cache: Cache, client: redis.Redis, command: dict) -> dict:
    """``threads`` concurrent get_or_set calls on one cold key, started together."""
    start = threading.Barrier(command["threads"])

    def loader() -> str:
        client.incr(command["counter"])
        time.sleep(0.3)  # a slow origin: the window a stampede needs
        return "loaded"

    results = []

    def call() -> None:
        start.wait()
        results.append(cache.get_or_set(command["key"], loader, lease_s=command["lease_s"]))

    threads = [threading.Thread(target=call) for _ in range(command["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": sorted(set(results)), "calls": len(results), "loads": cache.loads}


if __name__ == "__main__":
    main()
