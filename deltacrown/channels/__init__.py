"""Delivery channels: email and Discord (send_deliveries / send_delivery), unsubscribe links, email preview."""


def init_app(app):
    from . import views

    app.register_blueprint(views.bp)
