"""Test helpers, in one place (``tests/`` is on ``sys.path``: ``from helpers.waiting import wait_until``).

* :mod:`.paths`: the third-party fixture data (``tests/fixtures``) and the files the tests use most;
* :mod:`.cli`: running ``telemetry-sinks`` as a user would;
* :mod:`.waiting`: ``wait_until``;
* :mod:`.jsonl`: reading JSON-lines files;
* :mod:`.events`: the schemas, EventLog and fast delivery options the network sinks' tests share;
* :mod:`.servers`: real backend servers on free 127.0.0.1 ports, proxies that inject faults;
* :mod:`.harness`: one :class:`~.harness.Backend` per network sink, used by the reliability
  and privacy suites; the per-backend modules below are what it (and each sink's suite) builds on;
* backends: :mod:`.bulk` (Elasticsearch and OpenSearch), :mod:`.cloudwatch` and
  :mod:`.aws_fault_proxy`, :mod:`.fake_logging_api` (Cloud Logging), :mod:`.collector_process`
  (HTTP), :mod:`.kafka_readback`, :mod:`.relay` (``telemetry-sinks relay`` processes, group offsets);
* :mod:`.delivery`: test adapters of the delivery core; :mod:`.privacy`: the privacy suite's schema.
"""
