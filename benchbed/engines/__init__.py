"""Deploy engines: one module per engine, registered as `benchbed.engines` entry points."""
