"""The developer portal: server-rendered pages under ``/portal`` (see ``ingress.portal.app``)."""
