"""The one error of a config the gateway cannot use: the file's own checks
raise it, and so do the model groups' (``services.model_config``)."""


class ConfigError(Exception):
    pass
