/* coreMQTT's configuration for the compile check: defaults, no logging. */
#ifndef CORE_MQTT_CONFIG_H
#define CORE_MQTT_CONFIG_H
#endif
