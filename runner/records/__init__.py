"""Bytes to records to payloads and back, pure of Ray: listing and output keys, splitters, greedy
packing, DataProcessing filters and joins, opt-in input knobs, quarantine, output assembly."""
