"""Deterministic, index-addressed generation of comments and predictions.

Why this module exists: the emulator must serve up to millions of comments with flat memory,
so nothing is stored per generated comment. Every comment is a pure function of
(seed, dataset salt, queue index); every prediction a pure function of (comment id, model
version). Text comes from pools built once at import, so generating a comment costs a few
dozen random draws and some string joins (tens of microseconds).
"""

from __future__ import annotations

import random
import time

MASK64 = (1 << 64) - 1


def mix64(*parts: int) -> int:
    """splitmix64-style mixing of several integers into one well-spread 64-bit value."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & MASK64)) & MASK64
        h = (h + 0x9E3779B97F4A7C15) & MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK64
        h ^= h >> 31
    return h


def str_salt(s: str) -> int:
    """Stable (not PYTHONHASHSEED-dependent) 64-bit hash of a string."""
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return mix64(h)


def fmt_ms(ms: int) -> str:
    """Milliseconds since the epoch -> RFC 3339 UTC, the API's style: 2018-09-17T09:54:56.332000Z."""
    s, milli = divmod(int(ms), 1000)
    t = time.gmtime(s)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03d000Z" % (t[0], t[1], t[2], t[3], t[4], t[5], milli)


# ---------------------------------------------------------------------------------------------
# Text pools (built once)
# ---------------------------------------------------------------------------------------------

FIRST = ["Alice", "Bob", "Chloé", "Dmitri", "Élodie", "François", "Guðrún", "Hiroshi", "Ingrid", "José",
         "Kateřina", "Li Wei", "María", "Nnamdi", "Øystein", "Priya", "Quentin", "Renée", "Søren", "Tomás",
         "Ümit", "Valentina", "Wojciech", "Xiù", "Yusuf", "Zoë", "山田", "Саша"]
LAST = ["Smith", "Müller", "Dubois", "García", "Rossi", "Nowak", "Johansson", "Tanaka", "O'Brien", "Kowalski",
        "Nguyễn", "Papadopoulos", "Svensson", "Fernández", "Ivanova", "Chen", "Okafor", "Lefèvre"]
CUSTOMER_DOMAINS = ["example.com", "client-bank.co.uk", "globex.example", "initech.example", "umbrella.example",
                    "münchen-versicherung.de", "tokyo-trading.jp", "acme-partners.org"]
OUR_DOMAIN = "acme.example"
MAILBOXES = ["support@acme.example", "billing@acme.example", "claims@acme.example", "ops@acme.example"]
FOLDERS = ["Inbox (/ Inbox)", "Sent (/ Sent)", "Inbox (/ Inbox/Escalations)", "Archive (/ Archive)"]
PRIORITIES = ["Normal", "Normal", "Low", "High", "Normal"]
REGIONS = ["EMEA", "APAC", "AMER", "LATAM"]

SUBJECTS = [
    "Refund for order #{n}", "Invoice {n} query", "Address change request", "Claim {n}: status update",
    "Margin call notification {n}", "Please close my account", "Complaint about delayed delivery",
    "Urgent: payment failed", "Question about your fees", "Re-issue of statement for {n}",
    "Remboursement commande n°{n}", "Rückerstattung für Bestellung {n}", "請求書 {n} について",
    "Policy renewal {n} 🚗", "Duplicate charge on card ending {n}", "Interest accrual for period {n}",
]
OPENERS = ["Hi team,", "Hello,", "Dear Sir or Madam,", "Good morning,", "Bonjour,", "Hallo zusammen,",
           "お世話になっております。", "Hi {first},", "Dear {first},"]
SENTENCES = [
    "Could you please look into this as soon as possible?",
    "I was charged twice for the same order and would like a refund of {amt}.",
    "Please find attached the invoice we discussed on the phone.",
    "The payment of {amt} was due on {date} but has not arrived yet.",
    "We moved offices; our new address is 12 Rue de la Paix, 75002 Paris.",
    "My policy number is POL-{n} and the claim reference is CLM-{n2}.",
    "I have been waiting for three weeks without any answer, which is unacceptable. 😠",
    "Thank you for your quick help last time! 🙏",
    "Kindly confirm receipt of this e-mail.",
    "Die Lieferung ist leider beschädigt angekommen.",
    "La facture ne correspond pas à la commande passée le {date}.",
    "振込が確認できませんでしたので、ご確認をお願いいたします。",
    "The margin call amount is {amt} and the notification date is {date}.",
    "Our client Big Client Example Bank asked for a statement for the last quarter.",
    "Please treat this as urgent: the deadline is {date}.",
    "Can you explain the fee of {amt} on my latest statement?",
]
CLOSERS = ["Thanks,", "Best regards,", "Kind regards,", "Cordialement,", "Mit freundlichen Grüßen,", "よろしくお願いいたします。", "Cheers,"]
DISCLAIMER = ("This e-mail and any attachments are confidential and may be privileged. If you are not the "
              "intended recipient, please notify the sender immediately and delete it. ")
ATTACH = [("invoice.pdf", "application/pdf"), ("statement.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
          ("photo.jpg", "image/jpeg"), ("contract.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
          ("scan 2024 été.pdf", "application/pdf"), ("log.txt", "text/plain")]
CURRENCIES = ["GBP", "EUR", "USD", "AUD", "JPY", "CHF"]
CLIENTS = ["Big Client Example Bank", "Globex Corporation", "Initech Ltd", "Umbrella Insurance", "Société Générale d'Exemple", "東京商事"]


def _long_body(k: int) -> str:
    r = random.Random(1000 + k)
    parts = []
    size = 0
    while size < 10_500 + 900 * k:
        s = r.choice(SENTENCES).format(amt="1,234.56 EUR", date="2024-03-01", n=r.randrange(10**6), n2=r.randrange(10**4))
        parts.append(s)
        size += len(s.encode("utf-8")) + 1
    return "Forwarded thread below, see history.\n\n" + "\n".join(parts)


LONG_BODIES = [_long_body(k) for k in range(4)]

# ---------------------------------------------------------------------------------------------
# Taxonomy (label defs) and fields
# ---------------------------------------------------------------------------------------------

LABELS = [
    ("Billing", [], "Anything about invoices, charges and payments."),
    ("Billing > Refund", ["Amount", "Currency", "Order number"], "Customer asks for money back."),
    ("Billing > Invoice Query", ["Invoice number", "Amount"], "Question about an invoice."),
    ("Claims", [], "Insurance claims."),
    ("Claims > New Claim", ["Policy number", "Claim amount"], "A new claim is opened."),
    ("Claims > Status Update", ["Claim reference"], "Customer chases an existing claim."),
    ("Account", [], "Account administration."),
    ("Account > Address Change", ["New address"], "Change of postal address."),
    ("Account > Closure", [], "Customer wants to close the account."),
    ("Complaint", [], "Expressed dissatisfaction."),
    ("Urgent Request", ["Deadline"], "Needs action today."),
    ("Margin Call", ["Notification Date"], "Margin call notices."),
    ("Margin Call > Interest Accrual", ["Amount", "Broker number", "Client name", "Currency"], "Interest accrual on a margin call."),
]
# A second label group (taxonomy) of every dataset: its labels are predicted in the `tone` taxonomy.
# "Complaint" is in both groups on purpose: a label name is unique only within its group.
TONE_GROUP = "tone"
TONE_LABELS = [
    ("Complaint", [], "The customer is unhappy."),
    ("Praise", [], "The customer is pleased."),
    ("Neutral", [], "Neither."),
]
# Labels whose extraction can find several occurrences in one comment (two refunds, two claims).
REPEATABLE = ("Billing > Refund", "Billing > Invoice Query", "Claims > New Claim")
LEAVES = [i for i, (n, _, _) in enumerate(LABELS) if not any(o.startswith(n + " > ") for o, _, _ in LABELS)]
LABEL_INDEX = {n: i for i, (n, _, _) in enumerate(LABELS)}
GENERAL_FIELDS = ["monetary-quantity", "date", "client-name", "MarginCallDateType"]


def _hex_id(kind: str, name: str) -> str:
    return "%016x" % str_salt("%s:%s" % (kind, name))


def field_type_id(field_name: str) -> str:
    return _hex_id("field-type", field_name)


def moon_form(label: str, fields) -> list:
    """A label's extraction fields in the API's `moon_form` shape (ids are stable hashes of the names)."""
    out = []
    for f in fields:
        fid = _hex_id("field", "%s/%s" % (label, f))
        out.append({"field_id": fid, "id": fid, "field_type_id": field_type_id(f), "name": f, "kind": "text",
                    "instructions": ""})
    return out


def label_defs(labels=None) -> list:
    """LabelDef as the API serves it: no `description` (the text is in `instructions`)."""
    out = []
    for name, fields, desc in LABELS if labels is None else labels:
        d = {"name": name, "instructions": desc, "external_id": None, "pretrained": None, "trainable": True,
             "moon_form": moon_form(name, fields), "_flags": []}
        if " > " not in name:
            d["title"] = name
        out.append(d)
    return out


def label_groups() -> list:
    """`Dataset.label_groups`: the default taxonomy (the top-level `label_defs`) and the `tone` one."""
    def group(name, labels, instructions):
        return {"name": name, "label_defs": label_defs(labels), "label_collection_name": None, "trainable": True,
                "hidden": False, "instructions": instructions}
    return [group("default", LABELS, ""), group(TONE_GROUP, TONE_LABELS, "How the customer feels.")]


def general_field_defs() -> list:
    return [{"field_id": _hex_id("general-field", n), "field_type_id": field_type_id(n), "field_type_name": n,
             "api_name": n, "title": n.replace("-", " ").title()} for n in GENERAL_FIELDS]


def entity_defs() -> list:
    return [{"id": _hex_id("entity", n), "color": int(str_salt(n) % 16), "name": n, "title": n, "inherits_from": [],
             "trainable": True, "_entity_def_flags": [], "instructions": None} for n in GENERAL_FIELDS]


def model_definition() -> dict:
    """The /results body's top-level `model` (`UserModel`): the taxonomy a prediction refers to, no version."""
    labels = [{"name": name, "instructions": desc,
               "fields": [{k: f[k] for k in ("field_id", "field_type_id", "name", "instructions")}
                          for f in moon_form(name, fields)]}
              for name, fields, desc in LABELS]
    general = [{"field_id": d["field_id"], "field_type_id": d["field_type_id"], "name": d["api_name"], "instructions": None}
               for d in general_field_defs()]
    names = sorted({f for _, fields, _ in LABELS for f in fields} | set(GENERAL_FIELDS))
    field_types = [{"field_type_id": field_type_id(n), "name": n, "instructions": None,
                    "data_type": {"kind": "number" if n in ("Amount", "Claim amount", "monetary-quantity") else None}}
                   for n in names]
    tone = [{"name": name, "instructions": desc, "fields": []} for name, _, desc in TONE_LABELS]
    return {"definition": {"taxonomies": [{"name": "default", "instructions": "", "labels": labels,
                                           "general_fields": general, "field_types": field_types},
                                          {"name": TONE_GROUP, "instructions": "How the customer feels.", "labels": tone,
                                           "general_fields": [], "field_types": []}]}}


def default_label_thresholds(version: int) -> list:
    out = []
    for i, (name, _, _) in enumerate(LABELS):
        thr = 0.35 + (mix64(version, i) % 40) / 100.0
        out.append({"name": name.split(" > "), "threshold": round(thr, 2)})
    return out


def _field_value(name: str, r: random.Random) -> str:
    if name in ("Amount", "Claim amount"):
        return "{:,.2f}".format(r.randrange(100, 10**7) / 100)
    if name == "Currency":
        return r.choice(CURRENCIES)
    if name in ("Order number", "Invoice number", "Broker number"):
        return str(r.randrange(10**5, 10**7))
    if name in ("Policy number",):
        return "POL-%06d" % r.randrange(10**6)
    if name == "Claim reference":
        return "CLM-%05d" % r.randrange(10**5)
    if name == "Client name":
        return r.choice(CLIENTS)
    if name == "New address":
        return "12 Rue de la Paix, 75002 Paris"
    return "2024-%02d-%02d 00:00 UTC" % (r.randrange(1, 13), r.randrange(1, 29))


def _spans(r: random.Random, n: int = 1) -> list:
    out = []
    for _ in range(n):
        start = int(r.random() * 400)
        out.append({"content_part": ("body", "body", "subject", "signature")[int(r.random() * 4)], "message_index": 0,
                    "utf16_byte_start": start, "utf16_byte_end": start + 2 + int(r.random() * 40)})
    return out


def make_prediction(comment_id: str, version: int, thresholds: dict) -> dict:
    """Prediction in the /results shape (`StreamCommentPrediction`). thresholds: {"Parent > Child": float}.

    `r` draws what earlier releases drew, in the same order (values stay stable across releases);
    `s` draws what the real API added to them: text spans, scores, general fields' confidence.
    """
    r = random.Random(mix64(int(comment_id, 16), version, 77))
    s = random.Random(mix64(int(comment_id, 16), version, 78))
    chosen = sorted(set(r.sample(LEAVES, r.randrange(0, 4))))
    names = []
    for li in chosen:
        name = LABELS[li][0]
        if " > " in name:
            parent = name.split(" > ")[0]
            if parent not in names:
                names.append(parent)
        names.append(name)
    labels = []
    for name in names:
        v = r.random() ** 0.5
        th = []
        if v >= thresholds.get(name, 0.5):
            th.append("stream")
        if v >= 0.25:
            th.append("high_recall")
        if v >= 0.5:
            th.append("balanced")
        if v >= 0.8:
            th.append("high_precision")
        ev = r.random()
        fields = []
        for f in LABELS[LABEL_INDEX[name]][1]:
            value = None if r.random() < 0.25 else {"formatted": _field_value(f, r)}
            fields.append({"name": f, "value": value, "text_spans": _spans(s) if value else []})
        labels.append({"name": name, "occurrence_confidence": {"value": v, "thresholds": th},
                       "extraction_confidence": {"value": ev, "thresholds": ["stream"] if ev >= 0.5 else []},
                       "fields": fields})
    general = []
    if r.random() < 0.5:
        general.append({"name": "monetary-quantity", "value": {"formatted": "%s %s" % (_field_value("Amount", r), r.choice(CURRENCIES))},
                        "confidence": r.random(),
                        "text_spans": [{"content_part": "body", "message_index": 0, "utf16_byte_start": 0, "utf16_byte_end": 12}]})
    if r.random() < 0.3:
        general.append({"name": "MarginCallDateType", "value": {"formatted": _field_value("date", r)},
                        "confidence": None if s.random() < 0.2 else round(0.3 + 0.7 * s.random(), 4), "text_spans": _spans(s)})
    if r.random() < 0.3:
        general.append({"name": "client-name", "value": {"formatted": r.choice(CLIENTS)},
                        "confidence": round(s.random(), 4), "text_spans": _spans(s, 2)})
    if r.random() < 0.1:
        general.append({"name": "date", "value": None, "confidence": None, "text_spans": []})
    # `t` draws what this release added (values above stay what earlier releases generated): a second
    # occurrence of a repeatable label with its own field values, and the `tone` taxonomy.
    t = random.Random(mix64(int(comment_id, 16), version, 79))
    for index in range(len(labels) - 1, -1, -1):
        label = labels[index]
        if label["name"] in REPEATABLE and t.random() < 0.4:
            again = {"name": label["name"], "occurrence_confidence": dict(label["occurrence_confidence"]),
                     "extraction_confidence": {"value": round(t.random(), 4), "thresholds": []},
                     "fields": [{"name": f["name"], "value": {"formatted": _field_value(f["name"], t)},
                                 "text_spans": _spans(t)} for f in label["fields"]]}
            if again["extraction_confidence"]["value"] >= 0.5:
                again["extraction_confidence"]["thresholds"].append("stream")
            labels.insert(index + 1, again)
    tone = []
    if t.random() < 0.6:
        name = TONE_LABELS[int(t.random() * len(TONE_LABELS))][0]
        v = round(t.random() ** 0.5, 4)
        tone.append({"name": name, "occurrence_confidence": {"value": v, "thresholds": ["stream"] if v >= 0.5 else []},
                     "extraction_confidence": {"value": v, "thresholds": []}, "fields": []})
    scores = [] if s.random() < 0.1 else [{"name": "tone", "value": round(s.random() * 2 - 1, 4)},
                                          {"name": "quality_of_service", "value": round(s.random() * 5, 4)}]
    return {"taxonomies": [{"name": "default", "labels": labels, "general_fields": general},
                           {"name": TONE_GROUP, "labels": tone, "general_fields": []}], "scores": scores}


def legacy_labels(prediction: dict | None) -> tuple[list, list]:
    """(labels, entities) in the legacy /fetch shape: only labels meeting the stream threshold."""
    if not prediction:
        return [], []
    tax = prediction["taxonomies"][0]
    labels = [{"name": lab["name"].split(" > "), "probability": lab["occurrence_confidence"]["value"]}
              for lab in tax["labels"] if "stream" in lab["occurrence_confidence"]["thresholds"]]
    entities = [{"kind": g["name"], "name": g["name"], "formatted_value": g["value"]["formatted"]}
                for g in tax["general_fields"] if g.get("value")]
    return labels, entities


# ---------------------------------------------------------------------------------------------
# Comments
# ---------------------------------------------------------------------------------------------

def priority_of(key: int) -> str:
    """Cheap per-comment property used by the seeded `urgent-only` filter (about 1 in 10 Urgent)."""
    h = mix64(key, 0x5EED)
    if h % 10 == 0:
        return "Urgent"
    return PRIORITIES[(h >> 8) % len(PRIORITIES)]


def _mk_people():
    out = []
    for first in FIRST:
        for last in LAST:
            local = "".join(c for c in ("%s.%s" % (first, last)).lower() if c.isascii() and (c.isalnum() or c == "."))
            if not local or local.startswith(".") or local.endswith("."):
                local = "user.%s" % (local.strip(".") or "x")
            for dom in CUSTOMER_DOMAINS:
                out.append(("%s %s" % (first, last), "%s@%s" % (local, dom), first))
    return out


PEOPLE = _mk_people()


def make_comment(key: int, source_id: str, local_k: int, created_ms: int, ts_ms: int, priority: str) -> dict:
    """One realistic e-mail comment. key: a 64-bit value unique to the comment (drives everything)."""
    r = random.Random(key)
    rnd = r.random
    cid = "%016x" % mix64(key, 1)
    thread_no = local_k // 3
    pos_in_thread = local_k % 3 + 1
    tkey = mix64(int(source_id, 16), thread_no)
    thread_hex = "%016x%012x" % (tkey, mix64(tkey, 5) & 0xFFFFFFFFFFFF)
    subj = SUBJECTS[tkey % len(SUBJECTS)].format(n=tkey % 100000)
    if pos_in_thread > 1:
        subj = "RE: " + subj
    full_name, addr, first = PEOPLE[int(rnd() * len(PEOPLE))]
    inbound = rnd() < 0.8
    mailbox = MAILBOXES[tkey % len(MAILBOXES)]
    sender, recipient = (addr, mailbox) if inbound else (mailbox, addr)
    n_msgs = 1 + (rnd() < 0.35) + (rnd() < 0.2) + (rnd() < 0.1)
    messages = []
    amt = "{:,.2f} {}".format(int(100 + rnd() * 10**7) / 100, CURRENCIES[int(rnd() * len(CURRENCIES))])
    date = "2024-%02d-%02d" % (1 + int(rnd() * 12), 1 + int(rnd() * 28))
    n1 = int(rnd() * 10**6)
    n2 = int(rnd() * 10**4)
    nsent = len(SENTENCES)
    long_body = rnd() < 0.006
    for j in range(n_msgs):
        frm, to = (sender, recipient) if j % 2 == 0 else (recipient, sender)
        ns = 1 + int(rnd() * 5)
        body = OPENERS[int(rnd() * len(OPENERS))].format(first=first) + "\n\n" + " ".join(
            [SENTENCES[int(rnd() * nsent)] for _ in range(ns)]).format(amt=amt, date=date, n=n1, n2=n2)
        if long_body and j == 0:
            body = body + "\n\n" + LONG_BODIES[key % len(LONG_BODIES)]
        msg = {
            "from": frm,
            "to": [to],
            "cc": ["%s@%s" % (("team", "manager", "records")[int(rnd() * 3)], OUR_DOMAIN)] if rnd() < 0.3 else [],
            "bcc": [],
            "sent_at": fmt_ms(ts_ms - (n_msgs - 1 - j) * 3_600_000),
            "language": "en",
            "subject": {"text": subj if j == 0 else "RE: " + subj},
            "body": {"text": body},
        }
        if rnd() < 0.7:
            msg["signature"] = {"text": "%s\n%s" % (CLOSERS[int(rnd() * len(CLOSERS))], full_name if frm == addr else "ACME Customer Care")}
        messages.append(msg)
    # In the order they were sent (oldest first: `sent_at` increases), as the API lists a comment's messages.
    attachments = []
    for _ in range((rnd() < 0.25) + (rnd() < 0.1)):
        name, ctype = ATTACH[int(rnd() * len(ATTACH))]
        attachments.append({"name": name, "size": 1_000 + int(rnd() * 5_000_000), "content_type": ctype,
                            "content_hash": "%016x%016x" % (mix64(key, 2, len(attachments)), mix64(key, 3)), "inline": False})
    msg_id = "<%s@%s>" % (cid, sender.split("@")[1])
    c = {
        "uid": "%s.%s" % (source_id, cid),
        "id": cid,
        "source_id": source_id,
        "thread_id": thread_hex,
        "timestamp": fmt_ms(ts_ms),
        "user_properties": {
            "string:Sender": sender,
            "string:Sender Domain": sender.split("@")[1],
            "string:Folder": FOLDERS[0] if inbound else FOLDERS[1],
            "string:Message ID": msg_id,
            "string:Thread": "<%s@thread>" % thread_hex[:16],
            "string:Has Signature": "Yes" if "signature" in messages[-1] else "No",
            "string:Priority": priority,
            "string:Region": REGIONS[tkey % len(REGIONS)],
            "number:Messages": n_msgs,
            "number:Participants": 2 + len(messages[-1]["cc"]),
            "number:Position in Thread": pos_in_thread,
            "number:Amount": int(100 + rnd() * 10**7) / 100,
        },
        "messages": messages,
        "text_format": "markdown" if rnd() < 0.1 else "plain",
        "attachments": attachments,
        "created_at": fmt_ms(created_ms),
        "last_modified": fmt_ms(created_ms + int(rnd() * 86_400_000)),
        "context": "1",
        "has_annotations": rnd() < 0.08,
    }
    if rnd() < 0.15:
        c["x_future_field"] = {"kind": "preview", "score": round(rnd(), 3), "tags": ["alpha", "β"]}
    # drawn last, so that every value above stays what earlier releases generated
    up = c["user_properties"]
    up["boolean:Escalated"] = rnd() < 0.12
    if rnd() < 0.3:
        up["boolean:Auto Reply"] = False
    return c


def updated_comment(c: dict, modified_ms: int, text: str | None = None) -> dict:
    """A re-upload of `c`: same uid, id, timestamp and created_at; new last_modified and body text."""
    new = dict(c)
    msgs = [dict(m) for m in c["messages"]]
    body = dict(msgs[0]["body"])
    body["text"] = text if text is not None else body["text"] + "\n\n[Edited: the amounts above were corrected.]"
    msgs[0]["body"] = body
    new["messages"] = msgs
    new["last_modified"] = fmt_ms(modified_ms)
    return new
