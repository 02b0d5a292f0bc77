"""The application layer: command line, configuration, wiring (config -> pipeline, server,
worker), demo and logging. The top floor: no library module imports it."""
