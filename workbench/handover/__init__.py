"""Hand-over: the exported winner (YAML with provenance) and the production loader. The production service, monitoring and harvest of production questions belong here."""
