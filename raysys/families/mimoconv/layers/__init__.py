"""MIMOConv's layers (torch only): key binding/unbinding (:mod:`.binding`) and the isometry parts (:mod:`.isometry`)."""
