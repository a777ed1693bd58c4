"""Object identifiers and media types of RFC 8572 / RFC 8366 (see shared reference facts)."""

ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
ID_CT_SZTP_CONVEYED_INFO_XML = "1.2.840.113549.1.9.16.1.42"
ID_CT_SZTP_CONVEYED_INFO_JSON = "1.2.840.113549.1.9.16.1.43"
ID_CT_ANIMA_JSON_VOUCHER = "1.2.840.113549.1.9.16.1.40"

MEDIA_TYPE_JSON = "application/yang-data+json"
MEDIA_TYPE_XML = "application/yang-data+xml"
