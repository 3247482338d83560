import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finops.settings")


def _application():
    django_application = get_wsgi_application()
    # after Django is set up: the guard check and whoami are answered in front of its request cycle
    from finops.api.edge import edge_application

    return edge_application(django_application)


application = _application()
