"""MyHibachi: the booking service for a hibachi catering business, cached with freshcache."""

__version__ = "0.1.0"
