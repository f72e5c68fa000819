"""Tests of the bottom layer: files and the JSON codec, config fields, the registries, the package layout."""
