enum ConfbusAppPlaceholder {}
