// The portal's own script (try-it on an API's docs page); see docs.html.
