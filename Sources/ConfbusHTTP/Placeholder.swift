enum ConfbusHTTPPlaceholder {}
