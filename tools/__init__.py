"""Tools that run on an operator's or installer's computer."""
