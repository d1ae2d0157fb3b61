//! The OpenAPI 3 document served at `/openapi.json`, written by hand beside the routes it describes
//! (`api.rs`); a test checks that every route is in it and every documented path answers.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn job_id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    })
}

pub fn document() -> Value {
    let job_response = json!({
        "description": "The job",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "orrery serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "World generation jobs (Text2World, Image2World, Video2World) in a persistent queue. \
                With --token, every /v1 request needs `Authorization: Bearer TOKEN`."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}
                },
                "JobRequest": {
                    "type": "object", "required": ["prompt"], "additionalProperties": false,
                    "properties": {
                        "prompt": {"type": "string", "minLength": 1},
                        "seed": {"type": "integer", "minimum": 0},
                        "frames": {"type": "integer", "minimum": 1, "description": "1 + 4k; default the model's"},
                        "steps": {"type": "integer", "minimum": 1},
                        "guidance": {"type": "number", "minimum": 0},
                        "size": {"type": "string", "pattern": "^[0-9]+[xX][0-9]+$", "example": "64x64"},
                        "negative_prompt": {"type": "string"},
                        "truncate": {"type": "boolean"}
                    }
                },
                "Status": {
                    "type": "string",
                    "enum": ["queued", "running", "succeeded", "failed", "cancelled"]
                },
                "Job": {
                    "type": "object",
                    "required": ["id", "status", "progress", "error", "settings", "created", "finished"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "progress": {"type": "number", "minimum": 0, "maximum": 1},
                        "error": {"type": "string", "nullable": true},
                        "settings": {"type": "object", "description": "The request with the model's defaults resolved"},
                        "created": {"type": "string", "format": "date-time"},
                        "started": {"type": "string", "format": "date-time", "nullable": true},
                        "finished": {"type": "string", "format": "date-time", "nullable": true},
                        "video": {"type": "string", "description": "Where the MP4 is, once succeeded"}
                    }
                },
                "JobEvent": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "progress": {"type": "number"},
                        "error": {"type": "string", "nullable": true}
                    }
                }
            }
        },
        "paths": {
            "/healthz": {"get": {
                "summary": "Liveness", "security": [],
                "responses": {"200": {"description": "Serving"}}
            }},
            "/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3"}}
            }},
            "/v1/jobs": {
                "post": {
                    "summary": "Queue a job",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}},
                        "multipart/form-data": {"schema": {
                            "type": "object", "required": ["settings"],
                            "properties": {
                                "settings": {"type": "string", "description": "JobRequest as JSON"},
                                "image": {"type": "string", "format": "binary", "description": "Image2World: PNG, JPEG or GIF"},
                                "video": {"type": "string", "format": "binary", "description": "Video2World: MP4"}
                            }
                        }}
                    }},
                    "responses": {
                        "202": {"description": "Queued", "content": {"application/json": {"schema": {
                            "type": "object",
                            "properties": {"id": {"type": "string"}, "status": {"$ref": "#/components/schemas/Status"}}
                        }}}},
                        "400": error_response("Malformed or refused request, unreadable media"),
                        "401": error_response("Missing or wrong token"),
                        "413": error_response("Body larger than the upload limit")
                    }
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}},
                        {"name": "before", "in": "query", "description": "The previous page's `next`", "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": {"description": "A page of jobs", "content": {"application/json": {"schema": {
                            "type": "object",
                            "properties": {
                                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                "next": {"type": "string", "nullable": true}
                            }
                        }}}},
                        "400": error_response("Bad query"),
                        "401": error_response("Missing or wrong token")
                    }
                }
            },
            "/v1/jobs/{id}": {
                "parameters": [job_id_parameter()],
                "get": {
                    "summary": "A job's state",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": job_response,
                        "401": error_response("Missing or wrong token"),
                        "404": error_response("No such job")
                    }
                },
                "delete": {
                    "summary": "Cancel a queued or running job",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": job_response,
                        "401": error_response("Missing or wrong token"),
                        "404": error_response("No such job"),
                        "409": error_response("The job is already final")
                    }
                }
            },
            "/v1/jobs/{id}/video": {
                "parameters": [job_id_parameter()],
                "get": {
                    "summary": "The MP4 of a succeeded job (single byte ranges served)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {"description": "H.264 MP4", "content": {"video/mp4": {}}},
                        "206": {"description": "The bytes of a `Range: bytes=...` request", "content": {"video/mp4": {}}},
                        "416": error_response("The range lies outside the video"),
                        "401": error_response("Missing or wrong token"),
                        "404": error_response("No such job"),
                        "409": error_response("The job has not succeeded")
                    }
                }
            },
            "/v1/jobs/{id}/events": {
                "parameters": [job_id_parameter()],
                "get": {
                    "summary": "Server-sent events `job` with JobEvent data: the state now, then each change until final",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {"description": "text/event-stream", "content": {"text/event-stream": {
                            "schema": {"$ref": "#/components/schemas/JobEvent"}
                        }}},
                        "401": error_response("Missing or wrong token"),
                        "404": error_response("No such job")
                    }
                }
            }
        }
    })
}
