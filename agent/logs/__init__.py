"""Log watch: tail a node's log files (``[[log]]``), turn matching lines into
events and counters (``[[log_rule]]``), and ship every line up the tree in LOG
frames with the same spool and end-to-end ACK as DATA.

``config`` has the tables, ``parse`` the formats, ``rules`` the patterns,
``files`` one file's reading and identity, ``tailer`` the set of files and their
positions, ``watch`` the glue to the agent's uplink.
"""
