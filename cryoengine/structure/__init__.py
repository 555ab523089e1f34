"""Where atoms come from: fetching entries (the only network code), reading them, procedural phantoms."""
