"""The module componentize-py looks in for the `handler` export: the SDK's adapter, which
builds the class the app marked with `@dohost.durable_object`."""

from dohost._export import Exported as DurableObject  # noqa: F401
