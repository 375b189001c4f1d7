"""Alerts: channels behind one interface, sandboxed templates, routing, and the outbox relay.

- base.py      Channel protocol, registry, RenderedMessage / DeliveryResult, errors
- slack.py, email.py, webhook.py, console.py, apprise_channel.py   one file per channel type
- render.py    payload -> RenderedMessage (Jinja2 sandbox, templates/ holds the defaults)
- routing.py   which channels, when: digests, quiet hours, silences (pure)
- payload.py   evidence hash, group key, JSON payloads (pure)
- repeats.py   when a "still developing" repeat is due on a channel (pure)
- relay.py     the outbox relay (claim, send, mark; retries, pauses, rate limits)
- admin.py     the library behind ``storywatch alerts ...``
- views.py     frozen values handed out (AlertOutcome, RelayReport, AlertDetail...)

Queries live in storage/outbox.py (write side), storage/outbox_relay.py and storage/outbox_admin.py.
"""
