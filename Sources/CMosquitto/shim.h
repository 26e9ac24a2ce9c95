#ifndef CONFBUS_CMOSQUITTO_SHIM_H
#define CONFBUS_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>
#endif
