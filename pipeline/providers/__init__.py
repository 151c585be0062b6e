"""Providers: the vision stage's and the content stage's model behind one small interface."""
