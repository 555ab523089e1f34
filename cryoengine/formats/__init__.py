"""Files users exchange: MRC volumes, the RELION export, provenance records, atomic writes."""
