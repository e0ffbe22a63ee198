"""Process and service watch at the agent: must-run services, forbidden, suspicious and
over-limit processes, node-manager rules."""
