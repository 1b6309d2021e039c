"""Object storage for applications over the S3 API (the `minio` SDK): managed buckets with
grants and quotas, streaming objects, versions, policies, lifecycle, encryption, revocable
share links, analytics, mirrors and restore drills. See docs/storage.md.

Modules: ``client`` (the S3 clients and the wrapper every call goes through), ``names``
(bucket and key rules), ``access`` (grants), ``buckets`` and ``objects`` (the library),
``versions``, ``policy``, ``lifecycle``, ``encryption``, ``shares``, ``mirror``,
``drill``, ``analytics``, ``metrics``, ``loop`` (the leader's round)."""
