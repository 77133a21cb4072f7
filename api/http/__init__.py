"""The HTTP surface: the app factory, its dependencies, schemas and one router per resource."""
