"""Notifications: the type registry, preferences, the center, deliveries and their sends, emails, digests."""


def init_app(app):
    from ..api import register_blueprint
    from ..signals import user_created
    from . import api, bounce_cli, cli, email_views, mute_views, mutes_api, settings_views, suppression_api, views
    from .models import NotificationPreference

    # A new user starts with default preferences, committed with the user.
    user_created.connect(NotificationPreference.get_or_create_for_user)

    register_blueprint(app, api.bp)  # notifications, preferences, announcements
    mutes_api.init_app(app)  # the caller's mutes
    cli.init_app(app)  # flask send-digests, cleanup-notifications
    bounce_cli.init_app(app)  # flask process-bounces
    suppression_api.init_app(app)  # email events, the suppression list
    # Player pages: the notification center (+ nav badge) and the preference editor.
    views.init_app(app)
    settings_views.init_app(app)
    email_views.init_app(app)
    mute_views.init_app(app)  # mute controls (team, tournament, notification menu, editor)  # the unsubscribe link's page, the admin email preview
